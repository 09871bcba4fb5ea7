# The OpenTelemetry collector for compose.yaml, with a health check that can run.
#
# The collector's published image is distroless: it holds the collector binary and nothing that
# could ask its health_check extension (port 13133) anything, so compose cannot check it. This
# image is the same pinned binary (a static Go executable) on Alpine, whose busybox wget can.
FROM otel/opentelemetry-collector-contrib:0.111.0 AS collector

FROM alpine:3.20.3
COPY --from=collector /otelcol-contrib /otelcol-contrib
USER 10001
EXPOSE 4317 4318 8889 13133
ENTRYPOINT ["/otelcol-contrib"]
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
  CMD wget -q -O /dev/null http://127.0.0.1:13133/ || exit 1
