# One precompiled header shared by every target: LibTorch's headers dominate compile time.
add_library(distill_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/pch_anchor.cpp)
target_link_libraries(distill_pch PUBLIC ${TORCH_LIBRARIES})
target_compile_options(distill_pch PUBLIC -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
if(DISTILL_USE_PCH)
  target_precompile_headers(distill_pch PUBLIC ${PROJECT_SOURCE_DIR}/cmake/pch.h)
endif()

# distill_add_library(name SOURCES ... DEPS ...): a module library using the shared PCH.
function(distill_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${TORCH_LIBRARIES} ${ARG_DEPS})
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
  if(DISTILL_USE_PCH)
    target_precompile_headers(${name} REUSE_FROM distill_pch)
  endif()
endfunction()

include(GoogleTest)

# distill_add_test(name SOURCES ... DEPS ... [LABELS ...]): one GoogleTest binary per module.
function(distill_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} distill_test_support GTest::gtest)
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
  if(DISTILL_USE_PCH)
    target_precompile_headers(${name} REUSE_FROM distill_pch)
  endif()
  # One ctest entry per test case (`ctest -N` lists them; skips are reported by name), found when
  # ctest runs, not at build time. DistWorker.* cases are child processes of other cases. The
  # binary, source tree and torchrun the cases use are compiled into distill_test_support
  # (tests/CMakeLists.txt): a list-valued ENVIRONMENT does not survive discovery's PROPERTIES.
  gtest_discover_tests(${name}
    TEST_PREFIX "${name}."
    TEST_FILTER "-DistWorker.*"
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 120
    PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
