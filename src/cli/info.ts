// `tinyllava info`: what the engine runs on.
import * as torch from "../torch/index.js";
import { VERSION } from "../version.js";

export function info(): void {
  const blas = torch.blasInfo();
  console.log(
    JSON.stringify(
      {
        tinyllava: VERSION,
        libtorch: torch.libtorchVersion(),
        cuda: torch.cudaAvailable(),
        threads: torch.getNumThreads(),
        blas: blas.openblas ? `${blas.config} (${blas.threads} threads)` : "not OpenBLAS (matmuls may be slow)",
        cosSin: torch.vmlInfo().info,
        kernels: torch.kernelAlignment(),
        node: process.version,
      },
      null,
      2,
    ),
  );
}
