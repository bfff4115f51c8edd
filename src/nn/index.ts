export * from "./activations.js";
export * from "./layers.js";
export * from "./module.js";
