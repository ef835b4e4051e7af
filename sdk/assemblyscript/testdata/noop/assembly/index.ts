// The smallest AssemblyScript bolt: it forwards every event. Built by the
// SDK tests to check that a plugin imports only the host functions it calls.
import { Plugin, Event, Output, register, OK } from "../../../assembly/index";
export * from "../../../assembly/abi";

class Noop extends Plugin {
  process(e: Event, out: Output, index: i32): i32 {
    out.forward(e);
    return OK;
  }
}

register(new Noop());
