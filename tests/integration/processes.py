"""Run a service as a real OS process, to kill it for real."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

LOGS = Path(os.environ.get("GLV_TEST_LOG_DIR", "/tmp/glv-test-logs"))


class ServiceProcess:
    def __init__(self, module: str, env: dict[str, str], name: str) -> None:
        self._module = module
        self._env = env
        self._name = name
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(next(v for k, v in self._env.items() if k.endswith("_HTTP_PORT")))

    async def start(self, **extra_env: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = open(LOGS / f"{self._name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [sys.executable, "-m", self._module, "run"],
            env={**os.environ, **self._env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        await self.wait_ready()

    async def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with httpx.AsyncClient() as client:
            while True:
                assert self.process is not None and self.process.poll() is None, "service exited while starting"
                try:
                    if (await client.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "service not ready in time"
                await asyncio.sleep(0.1)

    async def wait_exit(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (code := self.process.poll()) is None:
            assert asyncio.get_running_loop().time() < deadline, "service did not exit"
            await asyncio.sleep(0.05)
        return code

    async def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
