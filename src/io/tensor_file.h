#pragma once
#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>

#include <string>

namespace distill::io {

// A string-keyed dict of IValues (tensors, numbers, strings, lists): what torch.save writes for
// a Python dict. Create empty ones with make_dict().
using TensorDict = c10::impl::GenericDict;
TensorDict make_dict();

// Saves a dict (tensors, numbers, strings, nested lists) in PyTorch's zip format, atomically.
// Python reads it with torch.load(path).
void save_dict(const std::string& path, const TensorDict& dict);

// Loads a file written by save_dict or by Python's torch.save (new zip format) whose top level is
// a dict with string keys. Error naming the file when it is not one.
TensorDict load_dict(const std::string& path);

// Loads any pickled value (lists of tensors, ...) from a torch.save file.
c10::IValue load_ivalue(const std::string& path);

// Typed access with errors that name the file and key.
at::Tensor get_tensor(const TensorDict& dict, const std::string& key, const std::string& file);
bool has_key(const TensorDict& dict, const std::string& key);

}  // namespace distill::io
