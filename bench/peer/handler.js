// Forwards the SQS event to the benchmark's function endpoint, as esmd's Invoke does.
exports.consume = async (event) => {
  const response = await fetch(process.env.PEER_FUNCTION_URL, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(event),
  });
  await response.text();
  return {};
};
