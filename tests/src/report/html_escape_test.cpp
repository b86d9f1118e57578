// HTML escaping and base64 (data: URIs): hand-written cases and RFC 4648's test vectors.
#include "src/report/html_escape.h"

#include <gtest/gtest.h>

#include "src/report/base64.h"

namespace distill::report {
namespace {

TEST(HtmlEscape, MarkupCharactersBecomeEntities) {
  EXPECT_EQ(html_escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;");
  EXPECT_EQ(html_escape("&lt;"), "&amp;lt;");  // already-escaped text is shown as typed
  EXPECT_EQ(html_escape(""), "");
}

TEST(HtmlEscape, TextAndUtf8PassThroughControlCharactersAreReplaced) {
  EXPECT_EQ(html_escape("loss µ=0.5\tok\n"), "loss µ=0.5\tok\n");
  EXPECT_EQ(html_escape(std::string("a\x01"
                                    "b\x7f",
                                    4)),
            "a&#xFFFD;b&#xFFFD;");
  EXPECT_EQ(html_escape(std::string("nul\0x", 5)), "nul&#xFFFD;x");
}

TEST(Base64, Rfc4648TestVectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

TEST(Base64, HighBytesUseTheLastTwoSymbols) {
  EXPECT_EQ(base64_encode(std::string("\xff\xfe\x00", 3)), "//4A");
  EXPECT_EQ(base64_encode(std::string("\xfb\xff", 2)), "+/8=");
  EXPECT_EQ(base64_encode("\x89PNG\r\n\x1a\n"), "iVBORw0KGgo=");
}

}  // namespace
}  // namespace distill::report
