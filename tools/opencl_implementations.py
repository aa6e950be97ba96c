#!/usr/bin/env python3
"""The OpenCL implementations this project is tested on, and how to reach each one on a Debian machine without
changing what other programs see.

    python tools/opencl_implementations.py setup            # pip: Intel's CPU runtime; apt: PoCL 3.1, rusticl
    python tools/opencl_implementations.py list             # which of them this machine has
    python tools/opencl_implementations.py run intel -- python -m pytest -q tests/test_sweep.py
    python tools/opencl_implementations.py bench            # one layer's forward on each (docs/portability.md)

`run NAME -- COMMAND` runs COMMAND with the environment that implementation needs: an OCL_ICD_VENDORS folder
of its own holding only its ICD file (pyopencl's loader adds the pip-installed PoCL and Oclgrind to it), its
library path, its switches, and DECONVND_CL_TEST_DEVICES naming its device. Debian's packages are installed with
/etc/OpenCL/vendors excluded, so the system's default platform list stays as it was.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DEBIAN_LIB = Path("/usr/lib/x86_64-linux-gnu")
PIP_PACKAGES = ["intel-opencl-rt", "intel-cmplr-lib-rt"]
APT_PACKAGES = ["pocl-opencl-icd", "mesa-opencl-icd"]
BENCH_LAYER = "nd=2,inmaps=64,outmaps=32,size=4,stride=2,pad=1,batch=8,spatial=16x16"


@dataclass
class Implementation:
    name: str
    title: str
    device: str                          # substring of deconvnd_cl.device.device_label
    icd: Path = None                     # library to register (None: pyopencl's loader finds it already)
    env: dict = field(default_factory=dict)
    library_path: Path = None            # added to LD_LIBRARY_PATH (the library's own dependencies)
    install: str = ""

    def present(self):
        return self.icd is None or self.icd.exists()

    def environment(self, vendors_dir):
        env = dict(os.environ, **self.env, DECONVND_CL_TEST_DEVICES=self.device)
        if self.icd is not None:
            (vendors_dir / f"{self.name}.icd").write_text(f"{self.icd}\n")
            env["OCL_ICD_VENDORS"] = str(vendors_dir)
        if self.library_path is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(self.library_path),
                                                                   env.get("LD_LIBRARY_PATH")]))
        return env


def implementations():
    venv_lib = Path(sys.prefix) / "lib"
    return [
        Implementation("pocl", "PoCL 3.0, pthread device (pip pocl-binary-distribution; the default)", "PoCL 3.0",
                       install="pip install pocl-binary-distribution"),
        Implementation("pocl-basic", "PoCL 3.0, basic device (one thread per work-group)", "PoCL 3.0",
                       env={"POCL_DEVICES": "basic"}, install="as pocl, with POCL_DEVICES=basic"),
        Implementation("pocl-debian", "PoCL 3.1 (Debian pocl-opencl-icd)", "PoCL 3.1", DEBIAN_LIB / "libpocl.so.2",
                       install="apt-get install pocl-opencl-icd"),
        Implementation("intel", "Intel OpenCL CPU runtime (pip intel-opencl-rt)", "Intel(R) OpenCL",
                       venv_lib / "libintelocl.so", library_path=venv_lib,
                       install="pip install intel-opencl-rt intel-cmplr-lib-rt"),
        Implementation("rusticl", "Mesa rusticl on llvmpipe (Debian mesa-opencl-icd)", "rusticl",
                       DEBIAN_LIB / "libRusticlOpenCL.so.1", env={"RUSTICL_ENABLE": "llvmpipe"},
                       install="apt-get install mesa-opencl-icd"),
    ]


def by_name(name):
    for impl in implementations():
        if impl.name == name:
            return impl
    raise SystemExit(f"unknown implementation {name!r} (known: {', '.join(i.name for i in implementations())})")


def run(impl, command):
    if not impl.present():
        raise SystemExit(f"{impl.name}: {impl.icd} is missing ({impl.install})")
    with tempfile.TemporaryDirectory(prefix="deconvnd_cl_vendors_") as vendors:
        return subprocess.call(command, env=impl.environment(Path(vendors)))


def cmd_setup(args):
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *PIP_PACKAGES])
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
    if shutil.which("apt-get") is None:
        print("no apt-get here: the Debian implementations are not installed", file=sys.stderr)
        return 1
    subprocess.check_call(apt + ["update", "-qq"])
    subprocess.check_call(apt + ["install", "-y", "-qq", "-o", "Dpkg::Options::=--path-exclude=/etc/OpenCL/vendors/*",
                                 *APT_PACKAGES], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return 0


PROBE = ("from deconvnd_cl.device import find_device, device_label; import os; "
         "d = find_device(os.environ['DECONVND_CL_TEST_DEVICES']); print(device_label(d) if d else 'NOT FOUND')")


def cmd_list(args):
    missing = 0
    for impl in implementations():
        if not impl.present():
            print(f"{impl.name:<12} missing ({impl.install})")
            missing += 1
            continue
        with tempfile.TemporaryDirectory() as vendors:
            out = subprocess.run([sys.executable, "-c", PROBE], env=impl.environment(Path(vendors)),
                                 capture_output=True, text=True)
        label = out.stdout.strip() or out.stderr.strip().splitlines()[-1]
        missing += label == "NOT FOUND"
        print(f"{impl.name:<12} {label}")
    return 1 if missing and args.strict else 0


def cmd_run(args):
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return run(by_name(args.name), command)


def cmd_bench(args):
    status = 0
    for impl in implementations():
        if not impl.present():
            print(f"== {impl.name}: missing ({impl.install})")
            continue
        print(f"== {impl.name}: {impl.title}", flush=True)
        status |= run(impl, [sys.executable, "-m", "deconvnd_cl", "bench", "--device", impl.device, "--no-torch",
                             "--repeats", str(args.repeats), *(args.layers or [BENCH_LAYER])])
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("setup", help="install the implementations (pip, apt)").set_defaults(func=cmd_setup)
    p = sub.add_parser("list", help="which implementations this machine has")
    p.add_argument("--strict", action="store_true", help="exit 1 if any is missing")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("run", help="run a command with one implementation's environment")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("bench", help="benchmark layers on each implementation (deconvnd-cl bench)")
    p.add_argument("layers", nargs="*")
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=cmd_bench)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
