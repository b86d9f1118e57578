#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stb_image.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/io/image_grid.h"
#include "src/io/metrics_log.h"
#include "src/io/progress.h"
#include "src/io/pickle_rewrite.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::io {
namespace {

using testing::TempDir;

TEST(AtomicFile, WritesWholeFileAndLeavesNoTemporary) {
  TempDir dir;
  write_file_atomic(dir.file("a/b.txt"), "hello");
  EXPECT_EQ(read_file(dir.file("a/b.txt")), "hello");
  int files = 0;
  for (auto& entry : std::filesystem::directory_iterator(dir.file("a"))) files += entry.exists();
  EXPECT_EQ(files, 1);
}

TEST(AtomicFile, MissingFileErrorNamesPath) {
  try {
    read_file("/nonexistent/file.bin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/file.bin"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos);
  }
}

TEST(TensorFile, RoundTripsDictOfTensorsAndScalars) {
  TempDir dir;
  TensorDict dict = make_dict();
  dict.insert("images", at::arange(12, at::kFloat).view({1, 3, 2, 2}));
  dict.insert("lr", at::scalar_tensor(0.01));
  dict.insert("name", c10::IValue(std::string("syn")));
  save_dict(dir.file("x.pt"), dict);
  TensorDict back = load_dict(dir.file("x.pt"));
  EXPECT_TRUE(at::equal(get_tensor(back, "images", "x.pt"), dict.at("images").toTensor()));
  EXPECT_EQ(back.at("name").toStringRef(), "syn");
}

TEST(TensorFile, PythonReadsOurFileAndWeReadPythons) {
  DISTILL_REQUIRE_PYTHON();
  TempDir dir;
  TensorDict dict = make_dict();
  at::Tensor images = at::linspace(-1, 1, 24).view({2, 3, 2, 2});
  dict.insert("images", images);
  save_dict(dir.file("ours.pt"), dict);
  testing::run_python_script("tensor_file_roundtrip.py", {dir.file("ours.pt"), dir.file("theirs.pt")});
  TensorDict theirs = load_dict(dir.file("theirs.pt"));
  // The script doubles `images` and adds an int64 label vector.
  EXPECT_TRUE(at::allclose(get_tensor(theirs, "images", "theirs.pt"), images * 2));
  EXPECT_TRUE(at::equal(get_tensor(theirs, "labels", "theirs.pt"), at::arange(2, at::kLong)));
}

// Python writes one-element lists / one-key dicts with APPEND / SETITEM; we rewrite them.
TEST(TensorFile, ReadsPythonFilesWithSingleItemContainers) {
  DISTILL_REQUIRE_PYTHON();
  TempDir dir;
  testing::run_python_script("single_item_containers.py", {dir.path()});
  auto arange = [](int64_t n, double k) { return at::arange(n, at::kFloat) + k; };
  c10::IValue buffer = load_ivalue(dir.file("one_expert.pt"));
  auto experts = buffer.toList();
  ASSERT_EQ(experts.size(), 1u);
  auto epochs = experts.get(0).toList();
  ASSERT_EQ(epochs.size(), 2u);
  auto first = epochs.get(0).toList();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_TRUE(at::equal(first.get(0).toTensor(), arange(3, 0)));
  EXPECT_TRUE(at::equal(first.get(1).toTensor(), arange(2, 10)));
  auto second = epochs.get(1).toList();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_TRUE(at::equal(second.get(0).toTensor(), arange(3, 20)));

  TensorDict one = load_dict(dir.file("one_key.pt"));
  EXPECT_EQ(one.size(), 1u);
  EXPECT_TRUE(at::equal(get_tensor(one, "images", "one_key.pt"), arange(4, 0)));

  TensorDict nested = load_dict(dir.file("nested.pt"));
  EXPECT_TRUE(at::equal(nested.at("a").toList().get(0).toTensor(), arange(2, 5)));
  auto inner = nested.at("b").toGenericDict();
  EXPECT_TRUE(at::equal(inner.at("c").toTensor(), arange(1, 7)));
  EXPECT_EQ(nested.at("n").toInt(), 3);
  EXPECT_EQ(nested.at("s").toStringRef(), "x");
}

// The rewrite on hand-made pickles: APPEND/SETITEM become MARK ... APPENDS/SETITEMS; junk fails.
TEST(PickleRewrite, RewritesAppendAndSetitemAndRejectsJunk) {
  // [1] as protocol 2: PROTO 2, EMPTY_LIST, BINPUT 0, BININT1 1, APPEND, STOP
  // (literals split where a hex escape would swallow the next letter)
  std::string list("\x80\x02]q\x00K\x01" "a.", 9);
  EXPECT_EQ(rewrite_single_item_containers(list), std::string("\x80\x02]q\x00(K\x01" "e.", 10));
  // {"k": 2}: EMPTY_DICT, BINPUT 0, BINUNICODE "k", BINPUT 1, BININT1 2, SETITEM, STOP
  std::string dict("\x80\x02}q\x00X\x01\x00\x00\x00kq\x01K\x02s.", 17);
  EXPECT_EQ(rewrite_single_item_containers(dict),
            std::string("\x80\x02}q\x00(X\x01\x00\x00\x00kq\x01K\x02u.", 18));
  // A list holding a reduced object (a tensor's rebuild call) moves MARK before the GLOBAL.
  std::string reduced("\x80\x02]q\x00" "cm\nf\n)Ra.", 14);
  EXPECT_EQ(rewrite_single_item_containers(reduced),
            std::string("\x80\x02]q\x00(cm\nf\n)Re.", 15));
  try {
    rewrite_single_item_containers(std::string("\x80\x02\xff.", 4));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported opcode 0xff at byte 2"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(rewrite_single_item_containers(std::string("\x80\x02]", 3)), Error);
}

TEST(TensorFile, NonZipFileIsAClearError) {
  TempDir dir;
  testing::write_bytes(dir.file("bad.pt"), "not a tensor file");
  try {
    load_dict(dir.file("bad.pt"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.pt"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("zip format"), std::string::npos);
  }
}

TEST(TensorFile, MissingKeyNamesFileAndKey) {
  TensorDict dict = make_dict();
  try {
    get_tensor(dict, "labels", "set.pt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'set.pt': missing key 'labels'"), std::string::npos);
  }
}

TEST(ImageGrid, PixelsLandInTheirTiles) {
  TempDir dir;
  // Two 1x2x3 images: the first all black, the second all white; one column.
  at::Tensor images = at::stack({at::zeros({1, 2, 3}), at::ones({1, 2, 3})});
  save_image_grid(dir.file("g.png"), images, 1, 1);
  int w, h, c;
  unsigned char* pixels = stbi_load(dir.file("g.png").c_str(), &w, &h, &c, 0);
  ASSERT_NE(pixels, nullptr);
  EXPECT_EQ(w, 3 + 2);
  EXPECT_EQ(h, 2 * (2 + 1) + 1);
  EXPECT_EQ(c, 1);
  EXPECT_EQ(pixels[1 * w + 1], 0);          // inside the first tile
  EXPECT_EQ(pixels[4 * w + 1], 255);        // inside the second tile
  EXPECT_EQ(pixels[0], 255);                // border
  stbi_image_free(pixels);
}

TEST(MetricsLog, WritesJsonLinesAndDropsStepsAfterResumePoint) {
  TempDir dir;
  {
    MetricsLog log(dir.file("m.jsonl"));
    log.log(1, {{"loss", 2.0}});
    log.log(2, {{"loss", std::nan("")}});
    log.log(3, {{"loss", 1.0}});
  }
  {
    MetricsLog log(dir.file("m.jsonl"), 2);
    log.log(3, {{"loss", 0.5}});
  }
  std::ifstream in(dir.file("m.jsonl"));
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_TRUE(lines[1]["loss"].is_null());
  EXPECT_EQ(lines[2]["loss"], 0.5);
  EXPECT_TRUE(lines[2].contains("time_s"));
}

// The log of a rank that does not write the run folder: no file is created, truncated or added to.
TEST(MetricsLog, ALogThatDoesNotWriteLeavesTheFileAlone) {
  TempDir dir;
  {
    MetricsLog off(dir.file("new.jsonl"), std::nullopt, /*write=*/false);
    off.log(1, {{"loss", 1.0}});
    EXPECT_FALSE(off.writes());
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("new.jsonl")));
  {
    MetricsLog log(dir.file("m.jsonl"));
    log.log(1, {{"loss", 2.0}});
  }
  {
    MetricsLog off(dir.file("m.jsonl"), std::nullopt, /*write=*/false);
    off.log(2, {{"loss", 1.0}});
  }
  std::ifstream in(dir.file("m.jsonl"));
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(nlohmann::json::parse(line)["step"], 1);
  EXPECT_FALSE(std::getline(in, line)) << "a second line: " << line;
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::format_duration(5), "5s");
  EXPECT_EQ(Progress::format_duration(185), "3m05s");
  EXPECT_EQ(Progress::format_duration(3720), "1h02m");
  EXPECT_EQ(Progress::format_duration(-1), "?");
}

TEST(Runtime, GeneratorsAreReproducibleAndDistinctPerIndex) {
  auto a = make_generator(7, 1, 3), b = make_generator(7, 1, 3), c = make_generator(7, 1, 4);
  at::Tensor x = at::rand({5}, a), y = at::rand({5}, b), z = at::rand({5}, c);
  EXPECT_TRUE(at::equal(x, y));
  EXPECT_FALSE(at::equal(x, z));
}

TEST(Runtime, DeviceSpecErrors) {
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  EXPECT_THROW(resolve_device("tpu"), Error);
  if (!at::hasCUDA()) {
    try {
      resolve_device("cuda");
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--device cuda"), std::string::npos);
    }
    EXPECT_TRUE(resolve_device("auto").is_cpu());
  }
}

}  // namespace
}  // namespace distill::io
