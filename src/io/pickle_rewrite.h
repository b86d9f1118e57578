#pragma once
#include <string>

namespace distill::io {

// Rewrites a protocol-2 pickle (what torch.save writes) so that LibTorch 1.13's unpickler can
// read it: that unpickler knows APPENDS and SETITEMS but not their one-element forms, which
// Python emits for a list with exactly one element (APPEND) or a dict with exactly one key
// (SETITEM). Each APPEND becomes MARK <item> APPENDS and each SETITEM MARK <key> <value>
// SETITEMS, found by tracking where every stack entry's opcodes start. Everything else is copied
// unchanged. Throws distill::Error naming the opcode and offset for anything it cannot parse
// (protocol 4 frames, unknown opcodes).
std::string rewrite_single_item_containers(const std::string& pickle);

}  // namespace distill::io
