"""The unittest sample on ferroloop through loop_factory (3.13), or the
policy before 3.13, where IsolatedAsyncioTestCase has no loop_factory."""

import sys

import ferroloop
import sample_unittest


class AsyncCase(sample_unittest.AsyncCase):
    loop_factory = ferroloop.Loop


if sys.version_info < (3, 13):
    setUpModule = ferroloop.install
