// A .wasm imported as a module: workerd and Workers bundlers give it compiled.
declare module '*.wasm' {
  const compiled: WebAssembly.Module;
  export default compiled;
}
