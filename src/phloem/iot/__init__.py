"""Rapid IoT device identification from the first seconds of DNS traffic.

After Thompson, Mandalari and Haddadi, "Rapid IoT Device Identification at the Edge",
DistributedML '21. Capture reading (:mod:`phloem.iot.pcap`), link/IP/transport decoding
(:mod:`phloem.iot.packets`) and DNS message parsing (:mod:`phloem.iot.dns`) are pure Python.
"""
