// A function object: instances of subclasses can be called, as Python objects with __call__ can.
export class Callable {
  constructor() {
    const closure = function (...args: unknown[]) {
      return (closure as unknown as { _call: (...a: unknown[]) => unknown })._call(...args);
    };
    // a function's own length and name would hide the subclass's getters of those names (len(tokenizer))
    delete (closure as { length?: number }).length;
    delete (closure as { name?: string }).name;
    return Object.setPrototypeOf(closure, new.target.prototype);
  }
}
