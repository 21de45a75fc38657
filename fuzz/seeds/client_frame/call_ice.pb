‚Q
call_1	2E{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}