# Gravity's container image, which the Helm chart (deploy/helm/gravity) runs.
#   docker build -t <registry>/gravity:0.1.0 . && docker push <registry>/gravity:0.1.0
# Two stages: the first installs everything and compiles (npm ci runs the build), the second keeps the
# production dependencies and the compiled output only.
FROM node:20.20-bookworm-slim AS build
WORKDIR /app
COPY . .
RUN npm ci && npm prune --omit=dev

FROM node:20.20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /app /app
# The chart runs the container as this user (uid 1000) with a read-only root filesystem: Gravity writes
# only to its data folder (/var/lib/gravity in the chart) and /tmp.
USER node
EXPOSE 8080 9464 9002
ENTRYPOINT ["node", "bin/gravity.js"]
CMD ["serve"]
