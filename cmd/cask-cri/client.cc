#include "cmd/cask-cri/client.h"

#include <grpcpp/grpcpp.h>

namespace cask::cri {

namespace v1 = runtime::v1;

namespace {

// containerd answers with up to 16 MiB (ExecSync output, verbose status);
// gRPC's default receive limit is 4 MiB.
constexpr int kMaxReceiveBytes = 16 << 20;

template <typename Stub, typename Req, typename Resp>
Result<Resp> Call(Stub* stub, grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*), const Req& req,
                  std::chrono::seconds deadline) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  Resp resp;
  grpc::Status st = (stub->*method)(&ctx, req, &resp);
  if (!st.ok()) return Error(static_cast<Code>(st.error_code()), st.error_message());
  return resp;
}

}  // namespace

CriClient::CriClient(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  runtime_ = v1::RuntimeService::NewStub(channel);
  images_ = v1::ImageService::NewStub(channel);
}

Result<v1::VersionResponse> CriClient::Version(Seconds d) {
  v1::VersionRequest r;
  r.set_version("v1");
  return Call(runtime_.get(), &v1::RuntimeService::Stub::Version, r, d);
}

Result<v1::StatusResponse> CriClient::Status(bool verbose, Seconds d) {
  v1::StatusRequest r;
  r.set_verbose(verbose);
  return Call(runtime_.get(), &v1::RuntimeService::Stub::Status, r, d);
}

Result<v1::RunPodSandboxResponse> CriClient::RunPodSandbox(const v1::RunPodSandboxRequest& r, Seconds d) {
  return Call(runtime_.get(), &v1::RuntimeService::Stub::RunPodSandbox, r, d);
}

Result<v1::StopPodSandboxResponse> CriClient::StopPodSandbox(const std::string& id, Seconds d) {
  v1::StopPodSandboxRequest r;
  r.set_pod_sandbox_id(id);
  return Call(runtime_.get(), &v1::RuntimeService::Stub::StopPodSandbox, r, d);
}

Result<v1::RemovePodSandboxResponse> CriClient::RemovePodSandbox(const std::string& id, Seconds d) {
  v1::RemovePodSandboxRequest r;
  r.set_pod_sandbox_id(id);
  return Call(runtime_.get(), &v1::RuntimeService::Stub::RemovePodSandbox, r, d);
}

Result<v1::PodSandboxStatusResponse> CriClient::PodSandboxStatus(const std::string& id, bool verbose, Seconds d) {
  v1::PodSandboxStatusRequest r;
  r.set_pod_sandbox_id(id);
  r.set_verbose(verbose);
  return Call(runtime_.get(), &v1::RuntimeService::Stub::PodSandboxStatus, r, d);
}

Result<v1::ListPodSandboxResponse> CriClient::ListPodSandbox(const v1::ListPodSandboxRequest& r, Seconds d) {
  return Call(runtime_.get(), &v1::RuntimeService::Stub::ListPodSandbox, r, d);
}

Result<v1::CreateContainerResponse> CriClient::CreateContainer(const v1::CreateContainerRequest& r, Seconds d) {
  return Call(runtime_.get(), &v1::RuntimeService::Stub::CreateContainer, r, d);
}

Result<v1::StartContainerResponse> CriClient::StartContainer(const std::string& id, Seconds d) {
  v1::StartContainerRequest r;
  r.set_container_id(id);
  return Call(runtime_.get(), &v1::RuntimeService::Stub::StartContainer, r, d);
}

Result<v1::StopContainerResponse> CriClient::StopContainer(const std::string& id, int64_t grace_s, Seconds d) {
  v1::StopContainerRequest r;
  r.set_container_id(id);
  r.set_timeout(grace_s);
  return Call(runtime_.get(), &v1::RuntimeService::Stub::StopContainer, r, d);
}

Result<v1::RemoveContainerResponse> CriClient::RemoveContainer(const std::string& id, Seconds d) {
  v1::RemoveContainerRequest r;
  r.set_container_id(id);
  return Call(runtime_.get(), &v1::RuntimeService::Stub::RemoveContainer, r, d);
}

Result<v1::ContainerStatusResponse> CriClient::ContainerStatus(const std::string& id, bool verbose, Seconds d) {
  v1::ContainerStatusRequest r;
  r.set_container_id(id);
  r.set_verbose(verbose);
  return Call(runtime_.get(), &v1::RuntimeService::Stub::ContainerStatus, r, d);
}

Result<v1::ListContainersResponse> CriClient::ListContainers(const v1::ListContainersRequest& r, Seconds d) {
  return Call(runtime_.get(), &v1::RuntimeService::Stub::ListContainers, r, d);
}

Result<v1::UpdateContainerResourcesResponse> CriClient::UpdateContainerResources(
    const v1::UpdateContainerResourcesRequest& r, Seconds d) {
  return Call(runtime_.get(), &v1::RuntimeService::Stub::UpdateContainerResources, r, d);
}

Result<v1::ExecSyncResponse> CriClient::ExecSync(const v1::ExecSyncRequest& r, Seconds d) {
  return Call(runtime_.get(), &v1::RuntimeService::Stub::ExecSync, r, d);
}

Result<v1::ListContainerStatsResponse> CriClient::ListContainerStats(const v1::ListContainerStatsRequest& r,
                                                                     Seconds d) {
  return Call(runtime_.get(), &v1::RuntimeService::Stub::ListContainerStats, r, d);
}

Result<v1::ListImagesResponse> CriClient::ListImages(const v1::ListImagesRequest& r, Seconds d) {
  return Call(images_.get(), &v1::ImageService::Stub::ListImages, r, d);
}

Result<v1::ImageStatusResponse> CriClient::ImageStatus(const std::string& image, bool verbose, Seconds d) {
  v1::ImageStatusRequest r;
  r.mutable_image()->set_image(image);
  r.set_verbose(verbose);
  return Call(images_.get(), &v1::ImageService::Stub::ImageStatus, r, d);
}

}  // namespace cask::cri
