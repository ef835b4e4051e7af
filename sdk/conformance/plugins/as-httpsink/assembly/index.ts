// The AssemblyScript version of the conformance suite's HTTP sink
// (sdk/conformance/README.md): it posts each batch's bodies, one per line.
import { Plugin, Event, Config, register, OK, fail, retry, httpRequest } from "../../../../assemblyscript/assembly/index";
export * from "../../../../assemblyscript/assembly/abi";

class HTTPSink extends Plugin {
  url: string = "";
  lines: string[] = [];

  init(cfg: Config): i32 {
    this.url = cfg.getString("url", "");
    return OK;
  }

  write(e: Event, index: i32): i32 {
    this.lines.push(e.bodyString());
    return OK;
  }

  flush(): i32 {
    const payload = String.UTF8.encode(this.lines.join("\n") + "\n");
    this.lines = [];
    const resp = httpRequest("POST", this.url, ["Content-Type"], ["text/plain"], changetype<usize>(payload), payload.byteLength);
    if (resp.error !== null) return fail(<string>resp.error);
    if (resp.status >= 500) return retry("http status " + resp.status.toString());
    if (resp.status >= 300) return fail("http status " + resp.status.toString());
    return OK;
  }
}

register(new HTTPSink());
