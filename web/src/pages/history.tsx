import { Link } from "../router.tsx";

/** The history explorer's place; its charts and CSV export come with the history work. */
export function HistoryPage() {
  return (
    <section aria-labelledby="history-title">
      <h1 id="history-title">History</h1>
      <div class="empty">
        The history explorer (machines × axes × fields over any window, downsampled, with CSV
        download) is on its way. Meanwhile each machine's page plots its recent history; start from
        the <Link href="/">fleet</Link>.
      </div>
    </section>
  );
}
