// Threads and build facts. libtorch starts with 1 intra-op thread on these machines and OpenBLAS keeps its own
// count, so both are set explicitly when the engine loads (native.ts, in every thread that loads it: worker threads
// too).
import { native as N } from "./native.js";

/** Sets libtorch's intra-op threads and OpenBLAS's threads for the calling JS thread. */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: expected a positive integer, got ${n}`);
  N.setNumThreads(n);
}

export function getNumThreads(): number {
  return N.getNumThreads();
}

export { defaultNumThreads } from "./native.js";

export function libtorchVersion(): string {
  return N.version();
}

export function cudaAvailable(): boolean {
  return N.cudaAvailable();
}

export function blasInfo(): { openblas: boolean; threads: number; config: string } {
  return N.blasInfo();
}

export function parallelInfo(): string {
  return N.parallelInfo();
}

/** Whether cos/sin of float CPU tensors use Intel MKL's VML as PyTorch's official x86 builds do (see `F.cosSin`), and
 * which libraries were loaded — or why not (MKL absent, or TINYLLAVA_VML=0). */
export function vmlInfo(): { available: boolean; info: string } {
  return N.vmlInfo();
}

/** How ATen's kernel choice was aligned with PyTorch 2.x (libtorch 1.x: AVX2 reduction order for sums). */
export function kernelAlignment(): string {
  return N.kernelAlignment();
}
