# ipcs-registry: one static binary, nothing else. Built by
# deploy/build-images.sh from a context holding the stripped binary and etc/.
FROM scratch
LABEL org.opencontainers.image.title="ipcs-registry" \
      org.opencontainers.image.description="IPCS server registry (heartbeats in, server list out)" \
      org.ipcs.managed-by="bootstrap"
COPY rootfs/ /
# Needs no privilege: a TCP listener on an unprivileged port.
USER 65534:65534
EXPOSE 7070/tcp
ENTRYPOINT ["/bin/ipcs-registry"]
CMD ["--listen", "0.0.0.0:7070"]
