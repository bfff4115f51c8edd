// Data types, in the addon's numbering (native/src/core.cpp kDtypes).
export type DType =
  | "float64"
  | "float32"
  | "bfloat16"
  | "float16"
  | "int64"
  | "int32"
  | "uint8"
  | "bool"
  | "int8"
  | "int16";

export const DTYPES: readonly DType[] = [
  "float64",
  "float32",
  "bfloat16",
  "float16",
  "int64",
  "int32",
  "uint8",
  "bool",
  "int8",
  "int16",
];

const CODES: Record<DType, number> = Object.fromEntries(DTYPES.map((d, i) => [d, i])) as Record<DType, number>;

export function dtypeCode(d: DType): number {
  const c = CODES[d];
  if (c === undefined) throw new TypeError(`unknown dtype "${String(d)}"; expected one of ${DTYPES.join(", ")}`);
  return c;
}

export function dtypeFromCode(c: number): DType {
  const d = DTYPES[c];
  if (d === undefined) throw new TypeError(`unknown dtype code ${c}`);
  return d;
}

export const ELEMENT_SIZE: Record<DType, number> = {
  float64: 8,
  float32: 4,
  bfloat16: 2,
  float16: 2,
  int64: 8,
  int32: 4,
  uint8: 1,
  bool: 1,
  int8: 1,
  int16: 2,
};

export function isFloating(d: DType): boolean {
  return d === "float64" || d === "float32" || d === "bfloat16" || d === "float16";
}

export type Device = "cpu" | `cuda${"" | `:${number}`}` | (string & {});
