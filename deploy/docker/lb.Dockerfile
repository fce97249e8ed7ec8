# ipcs-lb plus calc (the healthcheck asks 1+1 through the LB). Runs with host
# networking so its raw socket can bind the host's bridge ipcs0.
FROM scratch
LABEL org.opencontainers.image.title="ipcs-lb" \
      org.opencontainers.image.description="IPCS load balancer (UDP in, raw frames on ipcs0)" \
      org.ipcs.managed-by="bootstrap"
COPY rootfs/ /
ENTRYPOINT ["/bin/ipcs-lb"]
CMD ["--listen", "0.0.0.0:8080", "--iface", "ipcs0", "--registry", "registry.batata:7070", "--admin", "127.0.0.1:7071"]
