// IDX reader (the MNIST family's format, http://yann.lecun.com/exdb/mnist/): a big-endian
// header <0, 0, type, ndims> <ndims x uint32 sizes> followed by the raw array.
#include <ATen/ATen.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "src/data/readers.h"

namespace distill::data {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kImagesMagic = 0x00000803;  // uint8, 3 dimensions (N, H, W)
constexpr uint32_t kLabelsMagic = 0x00000801;  // uint8, 1 dimension (N)

std::string hex(uint32_t value) {
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "0x%08x", value);
  return buffer;
}

std::string describe_magic(uint32_t magic) {
  if (magic == kImagesMagic) return " (an IDX images file)";
  if (magic == kLabelsMagic) return " (an IDX labels file)";
  return " (not an IDX file of uint8 data)";
}

// A zlib file handle: gzopen/gzread decompress gzip files and pass other files through, so one
// reader serves train-images-idx3-ubyte and train-images-idx3-ubyte.gz.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    if (!fs::is_regular_file(path)) {
      throw Error("cannot open '" + path + "': " +
                  (fs::exists(path) ? std::string("not a regular file")
                                    : std::string("no such file")));
    }
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) throw Error("cannot open '" + path + "': " + std::strerror(errno));
  }
  ~GzFile() { gzclose(file_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Everything left in the (decompressed) file. A gzip stream cut short is an Error, not a
  // silently shorter array.
  std::string read_rest() {
    std::string out;
    std::vector<char> chunk(1 << 20);
    for (;;) {
      int n = gzread(file_, chunk.data(), static_cast<unsigned>(chunk.size()));
      if (n < 0) fail();
      if (n == 0) break;
      out.append(chunk.data(), static_cast<size_t>(n));
    }
    // gzread returns what it could decompress and flags Z_BUF_ERROR when the stream ends early.
    int code = Z_OK;
    gzerror(file_, &code);
    if (code != Z_OK) fail();
    return out;
  }

 private:
  [[noreturn]] void fail() {
    int code = Z_OK;
    const char* message = gzerror(file_, &code);
    throw Error("'" + path_ + "': corrupt or truncated gzip data (zlib: " +
                (code == Z_ERRNO ? std::string(std::strerror(errno)) : std::string(message)) + ")");
  }

  std::string path_;
  gzFile file_ = nullptr;
};

uint32_t big_endian(const std::string& bytes, size_t offset) {
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])); };
  return byte(offset) << 24 | byte(offset + 1) << 16 | byte(offset + 2) << 8 | byte(offset + 3);
}

// Reads an IDX file holding `expected_magic` and returns its uint8 array with the header's shape.
// `what` names one entry ("image", "label") for messages.
at::Tensor read_idx_array(const std::string& path, uint32_t expected_magic, const char* what) {
  std::string bytes;
  {
    GzFile file(path);
    bytes = file.read_rest();
  }
  const std::string expected = "IDX magic " + hex(expected_magic) + describe_magic(expected_magic);
  if (bytes.size() < 4) {
    throw Error("'" + path + "': expected " + expected + ", found a file of only " +
                std::to_string(bytes.size()) + " bytes");
  }
  uint32_t magic = big_endian(bytes, 0);
  if (magic != expected_magic) {
    throw Error("'" + path + "': expected " + expected + ", found magic " + hex(magic) +
                describe_magic(magic));
  }
  const size_t ndims = expected_magic & 0xff;
  const size_t header = 4 + 4 * ndims;
  if (bytes.size() < header) {
    throw Error("'" + path + "': truncated header: expected " + std::to_string(header) +
                " bytes, found " + std::to_string(bytes.size()));
  }
  std::vector<int64_t> shape;
  uint64_t count = 1;  // saturates instead of overflowing on a garbage header
  for (size_t d = 0; d < ndims; ++d) {
    shape.push_back(big_endian(bytes, 4 + 4 * d));
    const uint64_t size = static_cast<uint64_t>(shape.back());
    count = size != 0 && count > UINT64_MAX / size ? UINT64_MAX : count * size;
  }
  std::string layout = std::to_string(shape[0]) + " " + what + "s";
  if (ndims == 3) layout += " of " + std::to_string(shape[1]) + "x" + std::to_string(shape[2]);
  const uint64_t found = bytes.size() - header;
  if (found < count) {
    throw Error("'" + path + "': truncated: the header says " + layout + " (" +
                std::to_string(count) + " bytes), found " + std::to_string(found) +
                " bytes of data");
  }
  if (found > count) {
    throw Error("'" + path + "': the header says " + layout + " (" + std::to_string(count) +
                " bytes), found " + std::to_string(found) +
                " bytes of data (trailing bytes: wrong header or concatenated files?)");
  }
  at::Tensor array = at::empty(shape, at::kByte);
  if (count > 0) std::memcpy(array.data_ptr<uint8_t>(), bytes.data() + header, count);
  return array;
}

// `base` or `base.gz` inside `folder`, preferring the compressed file Debian ships.
std::string find_idx_file(const std::string& folder, const std::string& base) {
  for (const std::string& name : {base + ".gz", base}) {
    fs::path candidate = fs::path(folder) / name;
    if (fs::exists(candidate)) return candidate.string();
  }
  throw Error("'" + folder + "': missing " + base +
              "[.gz]; expected the MNIST-family files {train,t10k}-{images-idx3,labels-idx1}-"
              "ubyte[.gz]");
}

}  // namespace

Dataset read_idx(const std::string& images_path, const std::string& labels_path,
                 int64_t num_classes) {
  at::Tensor pixels = read_idx_array(images_path, kImagesMagic, "image");
  at::Tensor labels = read_idx_array(labels_path, kLabelsMagic, "label").to(at::kLong);
  if (pixels.size(0) != labels.size(0)) {
    throw Error("'" + images_path + "' holds " + std::to_string(pixels.size(0)) + " images but '" +
                labels_path + "' holds " + std::to_string(labels.size(0)) +
                " labels; expected one label per image");
  }
  at::Tensor bad = (labels >= num_classes).nonzero();
  if (bad.size(0) > 0) {
    int64_t index = bad[0][0].item<int64_t>();
    throw Error("'" + labels_path + "': label " + std::to_string(labels[index].item<int64_t>()) +
                " at index " + std::to_string(index) + " is outside [0, " +
                std::to_string(num_classes) + ")");
  }
  Dataset dataset;
  dataset.images = pixels.unsqueeze(1).to(at::kFloat).div_(255.0);
  dataset.labels = labels;
  dataset.num_classes = num_classes;
  dataset.class_names = numbered_class_names(num_classes);
  return dataset;
}

TrainTestSplit read_idx_folder(const std::string& folder, int64_t num_classes) {
  if (!fs::is_directory(folder)) {
    throw Error("cannot open folder '" + folder + "': " +
                (fs::exists(folder) ? std::string("not a folder") : std::string("no such folder")));
  }
  // Resolve all four names first so a missing file is reported before minutes of decoding.
  std::string train_images = find_idx_file(folder, "train-images-idx3-ubyte");
  std::string train_labels = find_idx_file(folder, "train-labels-idx1-ubyte");
  std::string test_images = find_idx_file(folder, "t10k-images-idx3-ubyte");
  std::string test_labels = find_idx_file(folder, "t10k-labels-idx1-ubyte");
  TrainTestSplit split;
  split.train = read_idx(train_images, train_labels, num_classes);
  split.test = read_idx(test_images, test_labels, num_classes);
  return split;
}

}  // namespace distill::data
