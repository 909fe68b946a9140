#include "lib/shim/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

namespace cask::shim {

std::array<uint8_t, 32> Sha256(std::string_view data) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  // EVP_Digest fails only when libcrypto cannot allocate or has no SHA-256
  // (a broken installation): nothing sensible to return, so stop.
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 || len != out.size())
    std::abort();
  return out;
}

std::string Sha256Hex(std::string_view data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : Sha256(data)) {
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

}  // namespace cask::shim
