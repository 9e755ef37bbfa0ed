// A function object: instances of subclasses can be called, as Python objects with __call__ can.
export class Callable {
  constructor() {
    const closure = function (...args: unknown[]) {
      return (closure as unknown as { _call: (...a: unknown[]) => unknown })._call(...args);
    };
    return Object.setPrototypeOf(closure, new.target.prototype);
  }
}
