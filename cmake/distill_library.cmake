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

# distill_add_test(name SOURCES ... DEPS ... [LABELS ...]): one GoogleTest binary per module.
function(distill_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} distill_test_support GTest::gtest)
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
  if(DISTILL_USE_PCH)
    target_precompile_headers(${name} REUSE_FROM distill_pch)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES
    ENVIRONMENT "DISTILL_BIN=${PROJECT_BINARY_DIR}/src/distill;DISTILL_SOURCE_DIR=${PROJECT_SOURCE_DIR};DISTILL_TORCHRUN=${DISTILL_TORCHRUN}"
    LABELS "${ARG_LABELS}")
endfunction()
