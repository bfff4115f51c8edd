// Run as a child process by reference-numerics.test.ts (environment set by the parent): what cosSin uses and whether
// its values are libtorch's own, printed as one JSON line.
import { arange, F, getNumThreads, tidy, vmlInfo } from "../../src/torch/index.js";

const out = tidy(() => {
  const inv = arange(0, 64, 2, { dtype: "int64" }).to("float32").div(64).rpow(10000).rdiv(1);
  const x = arange(0, 512, 1, { dtype: "float32" }).unsqueeze(-1).mul(inv);
  const { cos, sin } = F.cosSin(x);
  const c = cos.toArray();
  const s = sin.toArray();
  const cl = x.cos().toArray();
  const sl = x.sin().toArray();
  let differ = 0;
  for (let i = 0; i < c.length; i++) if (c[i] !== cl[i] || s[i] !== sl[i]) differ++;
  return { vml: vmlInfo(), differFromLibtorch: differ, threads: getNumThreads() };
});
console.log(JSON.stringify(out));
