#include "lib/sys/mountinfo.h"

#include <algorithm>
#include <charconv>

#include "lib/base/fs.h"

namespace cask::sys {
namespace {

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

// Next space-separated field of `line` from `pos`; false at the end.
bool NextField(std::string_view line, size_t& pos, std::string_view& field) {
  if (pos >= line.size()) return false;
  size_t sp = line.find(' ', pos);
  if (sp == std::string_view::npos) sp = line.size();
  field = line.substr(pos, sp - pos);
  pos = sp + 1;
  return true;
}

bool ParseInt(std::string_view s, int& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool ParseLine(std::string_view line, MountInfo& m) {
  size_t pos = 0;
  std::string_view id, parent, dev, root, point, options;
  if (!NextField(line, pos, id) || !NextField(line, pos, parent) || !NextField(line, pos, dev) ||
      !NextField(line, pos, root) || !NextField(line, pos, point) || !NextField(line, pos, options))
    return false;
  if (!ParseInt(id, m.id) || !ParseInt(parent, m.parent_id)) return false;
  if (dev.find(':') == std::string_view::npos) return false;
  // Optional fields ("shared:1", "master:2"...) up to the lone "-".
  std::string_view f;
  for (;;) {
    if (!NextField(line, pos, f)) return false;
    if (f == "-") break;
  }
  std::string_view fstype, source;
  if (!NextField(line, pos, fstype) || !NextField(line, pos, source) || fstype.empty()) return false;
  m.root = UnescapeMountPath(root);
  m.mount_point = UnescapeMountPath(point);
  if (m.mount_point.empty() || m.mount_point.front() != '/') return false;
  m.options = std::string(options);
  m.fstype = std::string(fstype);
  m.source = UnescapeMountPath(source);
  std::string_view super;
  if (NextField(line, pos, super)) m.super_options = std::string(super);
  return true;
}

size_t Depth(const std::string& p) { return static_cast<size_t>(std::count(p.begin(), p.end(), '/')); }

}  // namespace

std::string UnescapeMountPath(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && IsOctal(s[i + 1]) && IsOctal(s[i + 2]) && IsOctal(s[i + 3])) {
      int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out += static_cast<char>(v & 0xff);
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<MountInfo> ParseMountInfo(std::string_view text) {
  std::vector<MountInfo> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    MountInfo m;
    if (ParseLine(line, m)) out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<MountInfo>> ReadMountInfo() {
  CASK_ASSIGN_OR_RETURN(std::string text, ReadFile("/proc/self/mountinfo"));
  return ParseMountInfo(text);
}

bool PathIsAtOrBelow(std::string_view path, std::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir == "/") return !path.empty() && path.front() == '/';
  if (path == dir) return true;
  return path.size() > dir.size() && path.substr(0, dir.size()) == dir && path[dir.size()] == '/';
}

std::vector<std::string> MountPointsUnder(const std::vector<MountInfo>& mounts, std::string_view dir) {
  std::vector<std::string> out;
  for (const auto& m : mounts) {
    if (PathIsAtOrBelow(m.mount_point, dir)) out.push_back(m.mount_point);
  }
  // Reverse first (later mounts are upper in a stack), then a stable sort by
  // depth keeps that order among equal depths.
  std::reverse(out.begin(), out.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const std::string& a, const std::string& b) { return Depth(a) > Depth(b); });
  return out;
}

}  // namespace cask::sys
