// The task process lifecycle now lives with its owner, sandbox::Process
// (lib/sandbox/process_state.h); the shim keeps these names for its
// adapter and tests.
#pragma once

#include "lib/sandbox/process_state.h"

namespace cask::shim {

using sandbox::OpName;
using sandbox::ProcessOp;
using sandbox::ProcessState;
using sandbox::StateName;
using sandbox::Transition;

}  // namespace cask::shim
