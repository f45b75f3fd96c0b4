// The Java client settings of docs/integrators.md, as an agency would use them: loads the
// properties file given as the first argument, lists the topics the principal can see, prints
// one per line. Exit code 0 once the broker answered, 1 if it could not be reached or refused
// the TLS handshake or the login. Run by tests/integration/test_kcat_guide.py with the broker's
// own kafka-clients jar (single-file source launch: java -cp '<libs>/*' GuideJavaClient.java).
import java.io.FileReader;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListTopicsOptions;

public class GuideJavaClient {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileReader reader = new FileReader(args[0])) {
            props.load(reader);
        }
        // A refused handshake is retried until these run out: keep the test's failure short.
        props.putIfAbsent("default.api.timeout.ms", "15000");
        props.putIfAbsent("request.timeout.ms", "10000");
        try (Admin admin = Admin.create(props)) {
            for (String name : admin.listTopics(new ListTopicsOptions().timeoutMs(15000))
                    .names().get(20, TimeUnit.SECONDS)) {
                System.out.println(name);
            }
        } catch (Exception e) {
            System.err.println("refused: " + e);
            System.exit(1);
        }
    }
}
