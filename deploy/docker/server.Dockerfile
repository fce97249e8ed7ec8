# ipcs-server plus calc (the healthcheck asks the server's UDP endpoint
# 1+1; a scratch image has no shell to run anything else).
FROM scratch
LABEL org.opencontainers.image.title="ipcs-server" \
      org.opencontainers.image.description="IPCS calculation server (raw 0x88B5 frames on eth0)" \
      org.ipcs.managed-by="bootstrap"
COPY rootfs/ /
# Root inside the container: the AF_PACKET socket needs CAP_NET_RAW, which
# Docker grants to uid 0 only (no ambient capabilities).
EXPOSE 9000/udp
ENTRYPOINT ["/bin/ipcs-server"]
CMD ["--iface", "eth0", "--registry", "registry.batata:7070", "--udp", "0.0.0.0:9000"]
