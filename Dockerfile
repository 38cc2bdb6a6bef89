# Builds ticketd and ticket-projector, then ships them in a slim image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ticketd --bin ticket-projector

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/tickets --create-home tickets
COPY --from=build /src/target/release/ticketd /src/target/release/ticket-projector /usr/local/bin/
USER tickets
WORKDIR /var/lib/tickets
ENV TICKETS_LISTEN=0.0.0.0:8080
EXPOSE 8080
CMD ["ticketd"]
