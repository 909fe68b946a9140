#include "cmd/cask-cri/json_config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

#include "lib/base/fs.h"

namespace cask::cri {

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

const FieldDescriptor* FindField(const Descriptor* d, std::string_view key) {
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (EqualsIgnoreCase(key, f->name()) || EqualsIgnoreCase(key, f->json_name())) return f;
  }
  return nullptr;
}

std::string Child(const std::string& path, std::string_view key) { return path + "/" + std::string(key); }

Status Normalize(json& j, const Descriptor* d, const std::string& path);

// One field's value: recurse into messages, keep everything else for the
// protobuf parser to check.
Status NormalizeValue(json& v, const FieldDescriptor* f, const std::string& path) {
  if (f->is_map() || f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) return Ok();
  if (f->is_repeated()) {
    if (!v.is_array()) return Error::InvalidArgument(path + ": expected an array for field \"" + f->name() + "\"");
    for (size_t i = 0; i < v.size(); ++i) CASK_TRY(Normalize(v[i], f->message_type(), path + "/" + std::to_string(i)));
    return Ok();
  }
  return Normalize(v, f->message_type(), path);
}

Status Normalize(json& j, const Descriptor* d, const std::string& path) {
  if (!j.is_object()) {
    return Error::InvalidArgument((path.empty() ? "/" : path) + ": expected an object (" + d->name() + "), got " +
                                  j.type_name());
  }
  json out = json::object();
  for (auto& [key, value] : j.items()) {
    const FieldDescriptor* f = FindField(d, key);
    if (f == nullptr) {
      return Error::InvalidArgument(Child(path, key) + ": unknown field \"" + key + "\" in " + d->name());
    }
    if (out.contains(f->name())) {
      return Error::InvalidArgument(Child(path, key) + ": field \"" + f->name() + "\" given twice");
    }
    if (value.is_null()) continue;  // Go's decoder leaves the field unset
    CASK_TRY(NormalizeValue(value, f, Child(path, f->name())));
    out[f->name()] = std::move(value);
  }
  j = std::move(out);
  return Ok();
}

}  // namespace

Status MessageFromJson(std::string_view text, google::protobuf::Message* msg) {
  msg->Clear();
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::InvalidArgument("not valid JSON");
  CASK_TRY(Normalize(j, msg->GetDescriptor(), ""));
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(j.dump(), msg, opts);
  if (!st.ok()) return Error::InvalidArgument(std::string(st.message()));
  return Ok();
}

Status MessageFromJsonFile(const std::string& path, google::protobuf::Message* msg) {
  auto text = ReadFile(path);
  if (!text.ok()) return std::move(text).error();  // "open PATH: ..."
  return MessageFromJson(*text, msg).Context(path);
}

std::string MessageToJson(const google::protobuf::Message& msg) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(msg, &out, opts);
  // add_whitespace indents by two and ends with a newline already.
  return out;
}

}  // namespace cask::cri
