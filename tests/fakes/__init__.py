"""Loopback fakes that speak the real upstream wire formats, started by the test suite on 127.0.0.1."""
