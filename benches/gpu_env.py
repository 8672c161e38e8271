"""What benches/gpu-check.sh needs to know from the GPU machine's python3, as KEY=VALUE lines.

libdirs: the `nvidia/*/lib` folders of this Python's nvidia-* wheels (nvidia/cu13/lib for the
CUDA 13 wheels, nvidia/nccl/lib for NCCL), where the CUDA build of flopcal finds cuBLAS,
cuRAND and NVRTC at run time. torch: PyTorch's version, or torch_error with why it is missing.
Never fails: every problem is a value for the shell script to judge.
"""

import glob
import os
import sys


def one_line(e):
    return (type(e).__name__ + ": " + str(e)).replace("\n", " ")[:300]


def main():
    print("python=" + sys.version.split()[0])
    try:
        import nvidia  # namespace package of the nvidia-* wheels

        dirs = sorted(
            {d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "lib")) if os.path.isdir(d)}
        )
        print("libdirs=" + ":".join(dirs))
    except Exception as e:  # noqa: BLE001 - reported, not raised
        print("libdirs=")
        print("libdirs_error=" + one_line(e))
    if "--no-torch" in sys.argv:
        return
    try:
        import torch

        print("torch=" + torch.__version__)
        print("torch_cuda=" + str(torch.version.cuda))
        print("cuda_available=" + ("1" if torch.cuda.is_available() else "0"))
        print("cuda_devices=" + str(torch.cuda.device_count()))
    except Exception as e:  # noqa: BLE001
        print("torch_error=" + one_line(e))


if __name__ == "__main__":
    main()
