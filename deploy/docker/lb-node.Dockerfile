# One node of the LB tier (compose profile lb-tier, services lb1, lb2):
# ipcs-lb-node supervises ipcs-lb and keepalived (VRRP) in the container's
# network namespace on the backend network. keepalived is Debian's binary
# with the shared libraries it links (copied by deploy/build-images.sh from
# this host, found with ldd); /etc/passwd names root for its script_user.
FROM scratch
LABEL org.opencontainers.image.title="ipcs-lb-node" \
      org.opencontainers.image.description="IPCS LB tier node: ipcs-lb + keepalived sharing the virtual address" \
      org.ipcs.managed-by="bootstrap"
COPY rootfs/ /
# Root inside the container: keepalived adds the VIP (NET_ADMIN) and sends
# VRRP (NET_RAW); ipcs-lb drops to 65534 once its sockets are open.
EXPOSE 8080/udp 7071/tcp
ENTRYPOINT ["/bin/ipcs-lb-node"]
