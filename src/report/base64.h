#pragma once
#include <string>
#include <string_view>

namespace distill::report {

// Standard base64 (RFC 4648 section 4, with '=' padding), for `data:` URIs of embedded images.
std::string base64_encode(std::string_view bytes);

}  // namespace distill::report
