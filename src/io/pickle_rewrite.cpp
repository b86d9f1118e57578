#include "src/io/pickle_rewrite.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "src/core/error.h"

namespace distill::io {
namespace {

// One entry of the simulated unpickler stack: where (in the output) the opcodes that built it
// begin, or a MARK.
struct Entry {
  size_t start;
  bool mark;
};

uint64_t little_endian(const std::string& s, size_t at, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= uint64_t(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

}  // namespace

std::string rewrite_single_item_containers(const std::string& in) {
  std::string out;
  out.reserve(in.size() + in.size() / 16);
  std::vector<Entry> stack;
  size_t pos = 0;
  auto fail = [&](const std::string& what) -> Error {
    return Error("pickle: " + what + " at byte " + std::to_string(pos));
  };
  auto need = [&](size_t bytes) {
    if (pos + bytes > in.size()) throw fail("truncated data");
  };
  auto pop = [&]() {
    if (stack.empty()) throw fail("stack underflow");
    Entry e = stack.back();
    stack.pop_back();
    return e;
  };
  auto pop_to_mark = [&]() {  // returns the MARK's start
    while (!stack.empty() && !stack.back().mark) stack.pop_back();
    if (stack.empty()) throw fail("no MARK");
    size_t start = stack.back().start;
    stack.pop_back();
    return start;
  };
  while (pos < in.size()) {
    const size_t op_start = out.size();
    const unsigned char op = static_cast<unsigned char>(in[pos]);
    size_t arg = 0;  // argument bytes after the opcode
    switch (op) {
      case 0x80: arg = 1; break;  // PROTO
      case ']': case '}': case ')': case 'N': case 0x88: case 0x89:  // empty list/dict/tuple, None, bools
        stack.push_back({op_start, false});
        break;
      case '(':  // MARK
        stack.push_back({op_start, true});
        break;
      case 'q': arg = 1; break;  // BINPUT: memoizes the top, stack unchanged
      case 'r': arg = 4; break;  // LONG_BINPUT
      case 'h': arg = 1; stack.push_back({op_start, false}); break;  // BINGET
      case 'j': arg = 4; stack.push_back({op_start, false}); break;  // LONG_BINGET
      case 'K': arg = 1; stack.push_back({op_start, false}); break;  // BININT1
      case 'M': arg = 2; stack.push_back({op_start, false}); break;  // BININT2
      case 'J': arg = 4; stack.push_back({op_start, false}); break;  // BININT
      case 'G': arg = 8; stack.push_back({op_start, false}); break;  // BINFLOAT
      case 0x8a: need(2); arg = 1 + little_endian(in, pos + 1, 1); stack.push_back({op_start, false}); break;  // LONG1
      case 0x8b: need(5); arg = 4 + little_endian(in, pos + 1, 4); stack.push_back({op_start, false}); break;  // LONG4
      case 'X': need(5); arg = 4 + little_endian(in, pos + 1, 4); stack.push_back({op_start, false}); break;  // BINUNICODE
      case 'T': need(5); arg = 4 + little_endian(in, pos + 1, 4); stack.push_back({op_start, false}); break;  // BINSTRING
      case 'U': need(2); arg = 1 + little_endian(in, pos + 1, 1); stack.push_back({op_start, false}); break;  // SHORT_BINSTRING
      case 0x8c: need(2); arg = 1 + little_endian(in, pos + 1, 1); stack.push_back({op_start, false}); break;  // SHORT_BINUNICODE
      case 'c': {  // GLOBAL module\nname\n
        size_t first = in.find('\n', pos + 1);
        size_t second = first == std::string::npos ? first : in.find('\n', first + 1);
        if (second == std::string::npos) throw fail("unterminated GLOBAL");
        arg = second - pos;
        stack.push_back({op_start, false});
        break;
      }
      case 'Q': {  // BINPERSID: pid -> object, starting where the pid did
        Entry pid = pop();
        stack.push_back({pid.start, false});
        break;
      }
      case 'R': case 0x81: {  // REDUCE, NEWOBJ: callable args -> result
        pop();
        Entry callable = pop();
        stack.push_back({callable.start, false});
        break;
      }
      case 'b': pop(); break;  // BUILD: state applied to the object below
      case 't': case 'l': case 'd': {  // TUPLE, LIST, DICT from MARK
        stack.push_back({pop_to_mark(), false});
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        Entry first{0, false};
        for (int i = 0; i < op - 0x84; ++i) first = pop();
        stack.push_back({first.start, false});
        break;
      }
      case 'e': case 'u': pop_to_mark(); break;  // APPENDS, SETITEMS: the container stays
      case 'a': {  // APPEND -> MARK item APPENDS
        Entry item = pop();
        out.insert(item.start, 1, '(');
        out.push_back('e');
        ++pos;
        continue;
      }
      case 's': {  // SETITEM -> MARK key value SETITEMS
        pop();
        Entry key = pop();
        out.insert(key.start, 1, '(');
        out.push_back('u');
        ++pos;
        continue;
      }
      case '.':  // STOP
        out.push_back('.');
        ++pos;
        if (pos != in.size()) throw fail("data after STOP");
        return out;
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        throw fail(std::string("unsupported opcode ") + hex);
      }
    }
    need(1 + arg);
    out.append(in, pos, 1 + arg);
    pos += 1 + arg;
  }
  throw fail("no STOP opcode");
}

}  // namespace distill::io
