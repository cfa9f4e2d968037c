"""unittest.IsolatedAsyncioTestCase tests."""

import asyncio
import unittest

from loop_kind import EXPECTED, echo_through_server, running_loop_kind


class AsyncCase(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.setup_loop = asyncio.get_running_loop()

    async def test_runs_on_the_expected_loop(self):
        self.assertEqual(running_loop_kind(), EXPECTED)
        self.assertIs(asyncio.get_running_loop(), self.setup_loop)

    async def test_server_and_client(self):
        self.assertEqual(await echo_through_server(b'unittest\n'), b'unittest\n')
