# botwatch: one binary (the dashboard is inside it). Build from the repository root:
#   docker build -t botwatch .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p botwatch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/botwatch --create-home botwatch
COPY --from=build /src/target/release/botwatch /usr/local/bin/botwatch
USER botwatch
WORKDIR /var/lib/botwatch
ENV BOTWATCH_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["botwatch"]
CMD ["serve"]
