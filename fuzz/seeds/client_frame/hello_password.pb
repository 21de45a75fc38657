‹
alicecorrect horse*phone-12quip-sdk/0.18B6
2single:user_00000000000000a1:user_00000000000000b2B 
group:group_00000000000000c3