// Devices and the compute threads' count.
#pragma once

#include "core/common.h"

namespace torchlm {

bool CudaAvailable();
bool MpsAvailable();
int CudaDeviceCount();

// Threads of libtorch's OpenMP pool are per calling thread: the compute thread applies the count before each task.
void SetNumThreads(int n);
int GetNumThreads();
void ApplyThreadSettings();
// Keeps the calling thread (the JavaScript one) to one OpenMP thread, so that it never grows a second team.
void KeepCallingThreadSerial();

// The default CPU generator: seeded as torch.manual_seed, and its state for checkpoints that resume exactly.
void ManualSeed(uint64_t seed);
at::Tensor CpuRngState();
void SetCpuRngState(const at::Tensor& state);

}  // namespace torchlm
