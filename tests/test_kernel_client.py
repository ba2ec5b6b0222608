"""The loop's kernel client: ready means the kernel answers and IOPub delivers, and a dead
kernel is an error, not a hang."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import pytest

from forge.flywheel.runner import _logged_kernel_manager, ensure_kernel


@pytest.fixture
def km(tmp_path):
    manager = _logged_kernel_manager(tmp_path / "kernel.log")(kernel_name=ensure_kernel())
    yield manager
    if manager.has_kernel:
        asyncio.run(manager.shutdown_kernel(now=True))


@contextlib.asynccontextmanager
async def _ready_client(km):
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)  # asked right after launch: the kernel is still booting
        yield kc
    finally:
        kc.stop_channels()


def test_ready_client_sees_the_first_cells_output(km):
    async def scenario():
        async with _ready_client(km) as kc:
            outputs = []
            reply = await kc.execute_interactive("print('hello from the kernel')", timeout=60,
                                                 output_hook=outputs.append)
            assert reply["content"]["status"] == "ok"
            streams = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
            assert streams == ["hello from the kernel\n"]  # IOPub was subscribed before the first cell

    asyncio.run(scenario())


def test_dead_kernel_is_an_error_not_a_hang(km):
    async def scenario():
        async with _ready_client(km) as kc:
            await km.signal_kernel(signal.SIGKILL)
            while await km.is_alive():
                await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError, match="died|respond"):
                await kc.wait_for_ready(timeout=30)

    asyncio.run(scenario())
