// A CRI v1 client over gRPC on a unix socket: one method per call cask-cri
// makes, each returning the response or an Error whose code is the gRPC
// status code and whose message is the server's text (containerd's).
//
// Thread safety: one client may be used from one thread at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "lib/base/result.h"
#include "proto/cri/api.grpc.pb.h"

namespace cask::cri {

class CriClient {
 public:
  // `target` is a gRPC target ("unix:///run/containerd/containerd.sock",
  // see NormalizeEndpoint). Nothing is dialled until the first call.
  explicit CriClient(const std::string& target);

  using Seconds = std::chrono::seconds;

  Result<runtime::v1::VersionResponse> Version(Seconds deadline);
  Result<runtime::v1::StatusResponse> Status(bool verbose, Seconds deadline);
  Result<runtime::v1::RunPodSandboxResponse> RunPodSandbox(const runtime::v1::RunPodSandboxRequest& r, Seconds d);
  Result<runtime::v1::StopPodSandboxResponse> StopPodSandbox(const std::string& id, Seconds d);
  Result<runtime::v1::RemovePodSandboxResponse> RemovePodSandbox(const std::string& id, Seconds d);
  Result<runtime::v1::PodSandboxStatusResponse> PodSandboxStatus(const std::string& id, bool verbose, Seconds d);
  Result<runtime::v1::ListPodSandboxResponse> ListPodSandbox(const runtime::v1::ListPodSandboxRequest& r, Seconds d);
  Result<runtime::v1::CreateContainerResponse> CreateContainer(const runtime::v1::CreateContainerRequest& r,
                                                               Seconds d);
  Result<runtime::v1::StartContainerResponse> StartContainer(const std::string& id, Seconds d);
  Result<runtime::v1::StopContainerResponse> StopContainer(const std::string& id, int64_t grace_s, Seconds d);
  Result<runtime::v1::RemoveContainerResponse> RemoveContainer(const std::string& id, Seconds d);
  Result<runtime::v1::ContainerStatusResponse> ContainerStatus(const std::string& id, bool verbose, Seconds d);
  Result<runtime::v1::ListContainersResponse> ListContainers(const runtime::v1::ListContainersRequest& r, Seconds d);
  Result<runtime::v1::UpdateContainerResourcesResponse> UpdateContainerResources(
      const runtime::v1::UpdateContainerResourcesRequest& r, Seconds d);
  Result<runtime::v1::ExecSyncResponse> ExecSync(const runtime::v1::ExecSyncRequest& r, Seconds d);
  Result<runtime::v1::ListContainerStatsResponse> ListContainerStats(const runtime::v1::ListContainerStatsRequest& r,
                                                                     Seconds d);
  Result<runtime::v1::ListImagesResponse> ListImages(const runtime::v1::ListImagesRequest& r, Seconds d);
  Result<runtime::v1::ImageStatusResponse> ImageStatus(const std::string& image, bool verbose, Seconds d);

 private:
  std::unique_ptr<runtime::v1::RuntimeService::Stub> runtime_;
  std::unique_ptr<runtime::v1::ImageService::Stub> images_;
};

}  // namespace cask::cri
