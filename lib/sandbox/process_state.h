// The lifecycle of a task process (a container's init or an exec), with one
// transition function so that every illegal call fails the same way and says
// why ("cannot pause task in created state"), as containerd's runc shim does.
//
//   created --start--> running --pause--> paused --resume--> running
//   created|running|paused --exit--> stopped
//   created|stopped --delete--> deleted
//
// Kill is legal while the process can still receive a signal (created,
// running, paused) and leaves the state alone: the exit arrives separately.
// Kill of a stopped process is NOT_FOUND ("process already finished"),
// which containerd tolerates. Anything on a deleted process is NOT_FOUND.
// Exec needs a running container; Update anything not stopped; CloseIO and
// ResizePty are always accepted. Other illegal operations are
// FAILED_PRECONDITION.
#pragma once

#include <string_view>

#include "lib/base/result.h"

namespace cask::sandbox {

enum class ProcessState { kCreated, kRunning, kPaused, kStopped, kDeleted };
enum class ProcessOp { kStart, kPause, kResume, kKill, kExit, kDelete, kExec, kUpdate, kCloseIo, kResize };

std::string_view StateName(ProcessState s);
std::string_view OpName(ProcessOp op);

// The state after `op`, or the error explaining why `op` is illegal in
// `from`. `what` names the object in messages: "task" or "exec".
Result<ProcessState> Transition(ProcessState from, ProcessOp op, std::string_view what);

}  // namespace cask::sandbox
