"""Figure 2: the inference phase of 64 samples against a local OpenAI-compatible server that
answers every request after 100 ms, with 16 requests at once against 1."""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import report

from iml_core.agents import Phase, PhaseName
from iml_core.agents.llm import LLMAgent
from iml_core.backends.openai_compat import OpenAICompatBackend
from iml_core.tasks import generate_benchmark

DELAY, SAMPLES = 0.1, 64


class SlowServer(BaseHTTPRequestHandler):
    """Answers every chat request with a valid label after DELAY seconds, like a busy model server."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        time.sleep(DELAY)
        label = body["response_format"]["schema"]["properties"]["label"]["enum"][0]
        data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "slow",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": json.dumps({"label": label})}}],
                           "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def phase_seconds(url, parallel, task):
    backend = OpenAICompatBackend("slow", base_url=url, max_parallel=parallel, structured_output="json_object")
    agent = LLMAgent(task, backend)
    start = time.perf_counter()
    predictions = agent.infer("", [s.observation for s in task.samples[:SAMPLES]], Phase(0, 1, PhaseName.INFER))
    assert all(p.label for p in predictions)
    return time.perf_counter() - start


if __name__ == "__main__":
    ThreadingHTTPServer.request_queue_size = 128  # the default backlog of 5 drops concurrent connects
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowServer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    task = generate_benchmark("paper")
    one = phase_seconds(url, 1, task)
    sixteen = phase_seconds(url, 16, task)
    server.shutdown()
    sys.exit(0 if report("parallel_requests", sixteen, "s", one, "1 at once / 16 at once >= 10",
                         one / sixteen >= 10) else 1)
