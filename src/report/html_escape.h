#pragma once
#include <string>
#include <string_view>

namespace distill::report {

// Escapes text for HTML and SVG (XML) element content and double- or single-quoted attribute
// values: & < > " ' become entities, and control characters other than tab/newline/CR (which
// XML forbids) become U+FFFD, so a run named `<script>` is shown as text, never parsed as markup.
std::string html_escape(std::string_view text);

}  // namespace distill::report
