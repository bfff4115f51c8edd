// Grad-mode scopes (PyTorch's torch.no_grad / enable_grad). Thread-local in libtorch, as in PyTorch.
import { native as N } from "./native.js";

/** Runs fn with autograd recording off. */
export function noGrad<T>(fn: () => T): T {
  const prev = N.setGradEnabled(false);
  try {
    return fn();
  } finally {
    N.setGradEnabled(prev);
  }
}

/** Runs fn with autograd recording on (inside a noGrad scope, for example). */
export function enableGrad<T>(fn: () => T): T {
  const prev = N.setGradEnabled(true);
  try {
    return fn();
  } finally {
    N.setGradEnabled(prev);
  }
}

export function isGradEnabled(): boolean {
  return N.isGradEnabled();
}
