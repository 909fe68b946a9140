// SHA-256 for the shim socket name (containerd names shim sockets by the hex
// SHA-256 of "<address>/<namespace>/<id>"). A thin wrapper over libcrypto
// (OpenSSL's EVP_Digest), so no hash is hand-written here.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cask::shim {

std::array<uint8_t, 32> Sha256(std::string_view data);
// Lower-case hex of Sha256(data): 64 characters.
std::string Sha256Hex(std::string_view data);

}  // namespace cask::shim
