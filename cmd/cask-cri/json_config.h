// Reading CRI request messages from JSON files, the way crictl takes them
// (`runp pod.json`, `create POD ctr.json pod.json`).
//
// crictl decodes these files with Go's encoding/json into the generated
// structs, so the files in the wild use the proto field names
// ("log_directory"), matched case-insensitively. Protobuf's own JSON form
// uses lowerCamelCase ("logDirectory"). Both are accepted here: keys are
// first mapped onto the message's fields (by proto name or JSON name,
// ignoring case), then protobuf's JSON parser reads the result. The keys of
// map fields (labels, annotations, sysctls) are data and are kept as they
// are. A key that names no field is an error naming its path, not silently
// dropped as Go does: a misspelt field would otherwise run a different pod.
#pragma once

#include <google/protobuf/message.h>

#include <string>
#include <string_view>

#include "lib/base/result.h"

namespace cask::cri {

// Parses `text` (a JSON object) into `msg` (cleared first). INVALID_ARGUMENT
// names the JSON path of the offending key or value ("/metadata/nmae").
Status MessageFromJson(std::string_view text, google::protobuf::Message* msg);

// Reads the file at `path` and parses it with MessageFromJson; errors start
// with the path.
Status MessageFromJsonFile(const std::string& path, google::protobuf::Message* msg);

// The canonical protobuf JSON of `msg` (lowerCamelCase keys, every field
// printed, two-space indent), as `-o json` prints it.
std::string MessageToJson(const google::protobuf::Message& msg);

}  // namespace cask::cri
