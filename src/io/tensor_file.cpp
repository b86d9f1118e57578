#include "src/io/tensor_file.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <cstring>
#include <sstream>

#include "src/core/error.h"
#include "src/io/atomic_file.h"
#include "src/io/pickle_rewrite.h"
#include "src/io/serialization_compat.h"

namespace distill::io {
namespace {

#if !DISTILL_UNPICKLER_READS_SINGLE_ITEMS
// torch.save's zip read with the pickle rewritten first (see pickle_rewrite.h): the same steps as
// LibTorch's pickle_load, which reads <archive>/data.pkl and the tensors from <archive>/data/.
c10::IValue load_rewritten(const std::string& bytes) {
  std::istringstream stream(bytes);
  caffe2::serialize::PyTorchStreamReader zip(&stream);
  auto [pickle_data, pickle_size] = zip.getRecord("data.pkl");
  std::string pickle = rewrite_single_item_containers(
      std::string(static_cast<const char*>(pickle_data.get()), pickle_size));
  size_t offset = 0;
  auto read = [&](char* buffer, size_t n) {
    n = std::min(n, pickle.size() - offset);
    std::memcpy(buffer, pickle.data() + offset, n);
    offset += n;
    return n;
  };
  auto read_record = [&](const std::string& name) {
    return std::get<0>(zip.getRecord("data/" + name));
  };
  torch::jit::Unpickler unpickler(read, nullptr, nullptr, read_record, c10::nullopt);
  unpickler.set_version(zip.version());
  return unpickler.parse_ivalue();
}
#endif

}  // namespace

TensorDict make_dict() { return TensorDict(c10::StringType::get(), c10::AnyType::get()); }

void save_dict(const std::string& path, const TensorDict& dict) {
  std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

c10::IValue load_ivalue(const std::string& path) {
  std::string bytes = read_file(path);
  // torch.save's zip files start with the local-file-header magic "PK\3\4".
  if (bytes.size() < 4 || bytes.compare(0, 4, "PK\x03\x04") != 0) {
    throw Error("'" + path +
                "': expected a torch.save file in the zip format (PyTorch >= 1.6), found " +
                (bytes.empty() ? std::string("an empty file")
                               : std::string("another format (legacy torch.save or not a tensor "
                                             "file; re-save with torch.save(obj, path))")));
  }
  std::string failure;
  try {
    return torch::jit::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const std::exception& e) {
    failure = e.what();
    failure = failure.substr(0, failure.find('\n'));
  }
#if !DISTILL_UNPICKLER_READS_SINGLE_ITEMS
  // Python pickles one-element lists with APPEND and one-key dicts with SETITEM, which the
  // unpickler of LibTorch 1.13 does not know (shared/notes/libtorch-1.13-facts.md): rewrite them.
  if (failure.find("Unknown opcode") != std::string::npos) {
    try {
      return load_rewritten(bytes);
    } catch (const std::exception& e) {
      failure = e.what();
      failure = failure.substr(0, failure.find('\n'));
    }
  }
#endif
  throw Error("'" + path + "': cannot unpickle tensor file: " + failure);
}

TensorDict load_dict(const std::string& path) {
  c10::IValue value = load_ivalue(path);
  if (!value.isGenericDict()) {
    throw Error("'" + path + "': expected a dict of tensors at the top level, found " +
                value.tagKind());
  }
  TensorDict out = make_dict();
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString()) {
      throw Error("'" + path + "': expected string keys in the top-level dict, found " +
                  item.key().tagKind());
    }
    out.insert(item.key().toStringRef(), item.value());
  }
  return out;
}

bool has_key(const TensorDict& dict, const std::string& key) { return dict.contains(key); }

at::Tensor get_tensor(const TensorDict& dict, const std::string& key, const std::string& file) {
  if (!dict.contains(key)) throw Error("'" + file + "': missing key '" + key + "'");
  c10::IValue value = dict.at(key);
  if (!value.isTensor()) {
    throw Error("'" + file + "': key '" + key + "' should hold a tensor, found " +
                value.tagKind());
  }
  return value.toTensor();
}

}  // namespace distill::io
