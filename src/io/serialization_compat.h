#pragma once
// What each LibTorch line's unpickler reads. LibTorch 1.13's knows APPENDS and SETITEMS but not
// their one-element forms APPEND and SETITEM, which Python's pickler emits for a list with one
// element or a dict with one key; 2.x reads them. On 1.13, tensor_file.cpp rewrites such pickles
// first (pickle_rewrite.h); on 2.x that workaround is not compiled in.
#include <torch/version.h>

#define DISTILL_UNPICKLER_READS_SINGLE_ITEMS (TORCH_VERSION_MAJOR >= 2)
