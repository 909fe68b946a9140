// The pod's /dev/shm: one tmpfs in the guest, shared by the pod's
// containers and by no other pod.
//
// containerd's CRI plugin mounts a tmpfs in the host's sandbox directory and
// gives every container of the pod a bind of it at /dev/shm. Shared through
// virtio-fs that would be host memory written by two guests' page caches
// and slow for MAP_SHARED; so, as Kata does, the host bind is not shared at
// all: the agent mounts one tmpfs at kGuestPodShmDir when the sandbox is set
// up (PodShmMount), and each container's /dev/shm bind is rewritten to an
// rbind of it (UsePodShm). A container whose /dev/shm is not a bind (ctr's
// default tmpfs) keeps its own.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "lib/oci/spec.h"
#include "lib/sandbox/agent_client.h"

namespace cask::sandbox {

inline constexpr std::string_view kGuestPodShmDir = "/run/cask/sandbox/shm";
// containerd's CRI tmpfs size, used when the sandbox spec names none.
inline constexpr uint64_t kDefaultPodShmBytes = 64ull << 20;
inline constexpr uint64_t kMaxPodShmBytes = 16ull << 30;

// The size of the pod's /dev/shm: the size= option of the sandbox spec's
// first /dev/shm tmpfs entry (k/m/g suffixes as tmpfs takes them),
// bounded to [1 MiB, kMaxPodShmBytes]; kDefaultPodShmBytes without one.
uint64_t PodShmBytes(const oci::Spec& sandbox_spec);

// The SetupSandbox mount of the pod tmpfs (nosuid, nodev, noexec, 1777).
GuestMount PodShmMount(uint64_t bytes);

// `spec` with its /dev/shm entries replaced by one rbind of kGuestPodShmDir
// (keeping "ro" if the last host bind had it), when any /dev/shm entry is a
// bind of a host path; otherwise unchanged.
oci::Spec UsePodShm(oci::Spec spec);

// True for the bind UsePodShm made: its source is a guest path, not a host
// one, and is not shared.
bool IsPodShmBind(const oci::Mount& m);

}  // namespace cask::sandbox
