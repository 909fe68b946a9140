#include "lib/sandbox/process_state.h"

#include <string>

namespace cask::sandbox {

std::string_view StateName(ProcessState s) {
  switch (s) {
    case ProcessState::kCreated: return "created";
    case ProcessState::kRunning: return "running";
    case ProcessState::kPaused: return "paused";
    case ProcessState::kStopped: return "stopped";
    case ProcessState::kDeleted: return "deleted";
  }
  return "?";
}

std::string_view OpName(ProcessOp op) {
  switch (op) {
    case ProcessOp::kStart: return "start";
    case ProcessOp::kPause: return "pause";
    case ProcessOp::kResume: return "resume";
    case ProcessOp::kKill: return "kill";
    case ProcessOp::kExit: return "exit";
    case ProcessOp::kDelete: return "delete";
    case ProcessOp::kExec: return "exec in";
    case ProcessOp::kUpdate: return "update";
    case ProcessOp::kCloseIo: return "close io of";
    case ProcessOp::kResize: return "resize pty of";
  }
  return "?";
}

Result<ProcessState> Transition(ProcessState from, ProcessOp op, std::string_view what) {
  using S = ProcessState;
  using O = ProcessOp;
  auto illegal = [&] {
    return Error::FailedPrecondition("cannot " + std::string(OpName(op)) + " " + std::string(what) + " in " +
                                     std::string(StateName(from)) + " state");
  };
  if (from == S::kDeleted) return Error::NotFound(std::string(what) + " has been deleted");
  switch (op) {
    case O::kStart:
      if (from == S::kCreated) return S::kRunning;
      return illegal();
    case O::kPause:
      if (from == S::kRunning) return S::kPaused;
      return illegal();
    case O::kResume:
      if (from == S::kPaused) return S::kRunning;
      return illegal();
    case O::kKill:
      if (from == S::kStopped) return Error::NotFound("process already finished");
      return from;
    case O::kExit:
      return S::kStopped;  // an exit is a fact, whatever we believed before
    case O::kDelete:
      if (from == S::kCreated || from == S::kStopped) return S::kDeleted;
      if (from == S::kRunning) return Error::FailedPrecondition("cannot delete a running " + std::string(what));
      return illegal();
    case O::kExec:
      if (from == S::kRunning) return from;
      return illegal();
    case O::kUpdate:
      if (from == S::kStopped) return illegal();
      return from;
    case O::kCloseIo:
    case O::kResize:
      return from;  // harmless once stopped: nothing left to close or resize
  }
  return illegal();
}

}  // namespace cask::sandbox
